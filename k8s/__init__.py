"""mt-backend on Kubernetes: the manifests live next to this package; ``k8s.generate``
writes the parts derived from the scaling policy and the dashboards."""
