"""Return requests (RMAs): checked against the policy and what was delivered, approved
automatically or queued for a person."""
