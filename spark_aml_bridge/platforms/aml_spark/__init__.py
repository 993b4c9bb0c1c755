"""Azure Machine Learning serverless Spark (interactive sessions in AML notebooks, Spark jobs and
pipeline Spark components): detection and context (``shim``) and its identities
(``credentials``). It runs Synapse's runtime, so Synapse's signals tell it apart."""
