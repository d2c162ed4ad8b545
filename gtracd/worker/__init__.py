"""The worker role: hosts a layer range and serves inference sessions (`gtracd --role worker`)."""
