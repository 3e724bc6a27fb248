with source as (
    select * from {{ source('raw', 'conversations') }}
),

renamed as (
    select
        _row_id as message_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(sent_at as {{ dbt.type_timestamp() }}) as sent_at,
        coalesce(role, 'user') as role,
        text,
        _landing_date as landing_date,
        _loaded_at as loaded_at
    from source
)

select * from renamed
