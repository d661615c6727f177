"""Device PKI: the device CA, short-lived box certificates, and the shared certificate/revocation store."""
