with source as (
    select * from {{ source('raw', 'events') }}
),

renamed as (
    select
        _row_id as event_id,
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at,
        lower(event_type) as event_type,
        lower(topic) as topic,
        item_id,
        lower(channel) as channel,
        lower(content_format) as content_format,
        cast(value as decimal(18, 2)) as value,
        text,
        _landing_date as landing_date,
        _loaded_at as loaded_at
    from source
)

select * from renamed
