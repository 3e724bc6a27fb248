{#-
    One row per user for survival models: start, end (churn or censoring), the churn flag and covariates
    measured over the feature window before the end, so a churner's covariates come from before churning.
-#}
{{ survival_frame_sql(ref('int_user_churn_status')) }}
