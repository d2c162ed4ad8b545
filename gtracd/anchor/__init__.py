"""The anchor role: admits trust reports and keeps a replica of the ledger (`gtracd --role anchor`)."""
