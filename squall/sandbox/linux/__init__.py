"""Linux isolation backend: namespaces, cgroups and a zygote."""
