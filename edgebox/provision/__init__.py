"""First-boot provisioning of the SD image (see `edgebox.provision.core`)."""
