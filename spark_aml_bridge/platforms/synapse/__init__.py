"""Azure Synapse Spark pools and Microsoft Fabric (both set the Arcadia variable): detection and
context (``shim``, ``fabric``), credential sources (``credentials``), pool configuration
(``pool_config``) and batch jobs (``jobs``)."""
