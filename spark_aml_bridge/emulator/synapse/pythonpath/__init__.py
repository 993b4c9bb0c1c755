"""Put this directory on ``sys.path`` (runtime.py does) to import the runtime double's
``notebookutils``, as a Synapse or Fabric driver imports the real one."""
