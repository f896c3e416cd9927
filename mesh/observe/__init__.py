"""What a running component tells an operator: Prometheus metrics (:mod:`mesh.observe.metrics`)
served on ``/metrics`` (:mod:`mesh.observe.serve`)."""
