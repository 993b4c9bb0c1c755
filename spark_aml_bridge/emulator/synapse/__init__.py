"""Synapse (and Fabric) runtime double for tests and local development.

* ``runtime.SynapseRuntime``: makes a process look like a Synapse/Fabric Spark driver: env vars,
  Spark conf, an importable ``notebookutils`` (``pythonpath/``) and the JVM ``TokenLibrary``, all
  getting real tokens from the workspace emulator.
* ``utils``: what those notebook utilities answer (tokens, Key Vault secrets, env, context).
* ``livy.LivyDouble``: an HTTPS double of Synapse's Livy batch API that records payloads and can
  run each batch as a local Synapse-like driver.

Importing this package is cheap (stdlib only).
"""
