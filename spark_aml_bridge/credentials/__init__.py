"""What every platform's credentials share: named sources and the chain (``sources``), the
sources any machine offers (``generic``), who a token or credential is (``identity``), the token
cache, the executors' link to the driver, and the one "no credential" error. Each platform's own
sources live with it, in ``platforms/<name>/credentials.py``."""
