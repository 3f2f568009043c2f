"""shimless: move Kubernetes nodes off dockershim onto containerd or CRI-O."""
