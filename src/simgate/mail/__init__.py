"""Email to SMS: an SMTP front door over the messages service."""
