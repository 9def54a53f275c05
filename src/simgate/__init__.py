"""simgate: an SMS gateway for phones and GSM modems with one or more SIM cards."""

__version__ = "0.1.0"
