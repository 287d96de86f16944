"""What a campaign shows: round reports, MLflow tracking, plots, the console, metrics."""
