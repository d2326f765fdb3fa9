"""Several front ends on one database: changes relayed between them, one leader for singleton work."""
