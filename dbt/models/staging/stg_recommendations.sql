with source as (
    select * from {{ source('raw', 'recommendations') }}
),

renamed as (
    select
        _row_id as rec_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(shown_at as {{ dbt.type_timestamp() }}) as shown_at,
        item_id,
        lower(topic) as topic,
        coalesce(response, 'ignored') as response,
        cast(responded_at as {{ dbt.type_timestamp() }}) as responded_at,
        _landing_date as landing_date,
        _loaded_at as loaded_at
    from source
)

select * from renamed
