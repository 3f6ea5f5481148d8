"""tenant-registry-operator: registry pull credentials for every tenant namespace."""
