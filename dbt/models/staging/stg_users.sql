with source as (
    select * from {{ source('raw', 'users') }}
),

renamed as (
    select
        cast(user_id as {{ dbt.type_string() }}) as user_id,
        cast(signed_up_at as {{ dbt.type_timestamp() }}) as signed_up_at,
        plan,
        country,
        acquisition_channel,
        _landing_date as landing_date,
        _loaded_at as loaded_at
    from source
)

select * from renamed
