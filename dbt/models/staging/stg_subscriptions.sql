with source as (
    select * from {{ source('raw', 'subscriptions') }}
),

renamed as (
    select
        _row_id as subscription_event_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at,
        action,
        plan,
        cast(mrr as decimal(18, 2)) as mrr,
        _landing_date as landing_date,
        _loaded_at as loaded_at
    from source
)

select * from renamed
