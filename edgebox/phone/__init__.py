"""Reference phone client: pairs from a QR payload and asks prompts over any transport."""
