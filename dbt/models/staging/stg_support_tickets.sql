with source as (
    select * from {{ source('raw', 'support_tickets') }}
),

renamed as (
    select
        _row_id as ticket_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(opened_at as {{ dbt.type_timestamp() }}) as opened_at,
        lower(category) as category,
        cast(closed_at as {{ dbt.type_timestamp() }}) as closed_at,
        cast(satisfaction as double) as satisfaction,
        _landing_date as landing_date,
        _loaded_at as loaded_at
    from source
)

select * from renamed
