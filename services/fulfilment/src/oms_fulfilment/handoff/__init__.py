"""The hand-off of a sealed package to shipping: its label bought, the package shipped."""
