"""`gtracd top` and the human `gtracd status`: the network as the local daemons see it."""
