"""svcconform's pytest wiring, as plugins in ``fixtures/``: options → ClusterSpec → provider →
session fixtures → results.

* :mod:`fixtures.options` — the options (``pytest --help``, section "svcconform") and their parsers
* :mod:`fixtures.cellresults` — results.json/junit.xml of a cell run, diagnostics capture,
  ``record_measurement`` and ``record_hypothesis_seed``
* :mod:`fixtures.session` — the cell session: configuration, the cluster's lifecycle and the
  session fixtures (``cluster``, ``cluster_facts``, ``kube``, ``node_vantages``, ...)
* :mod:`fixtures.namespaces` — ``test_namespace`` and ``module_namespace``
"""

# Each plugin after the plugins it imports, so pytest imports (and assertion-rewrites) each itself.
pytest_plugins = ["fixtures.options", "fixtures.cellresults", "fixtures.session", "fixtures.namespaces"]
