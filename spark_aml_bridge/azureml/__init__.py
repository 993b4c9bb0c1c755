"""MLflow plugins for the Azure ML workspace (the `azureml` scheme)."""
