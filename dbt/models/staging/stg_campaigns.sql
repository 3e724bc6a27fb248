with source as (
    select * from {{ source('raw', 'campaigns') }}
),

renamed as (
    select
        _row_id as send_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(sent_at as {{ dbt.type_timestamp() }}) as sent_at,
        campaign_id,
        {{ adapter.quote('group') }} as campaign_group,
        lower(topic) as topic,
        _landing_date as landing_date,
        _loaded_at as loaded_at
    from source
)

select * from renamed
