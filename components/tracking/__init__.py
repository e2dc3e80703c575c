"""What goes to MLflow: the pipeline's run, logging that survives a server outage, the plots,
and the registered text model."""
