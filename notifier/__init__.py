"""The notifier: consumes job events and delivers them as signed webhooks and email."""
