"""The anchor keyring and how it changes (pure): quorum-signed updates that add, remove and revoke anchor
keys (`update`). Daemons keep it current with control.keyring; `gtracd keys` drives it (cli.keyring)."""
