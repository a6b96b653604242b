"""The in-app inbox: messages to InAppMessage subscriptions, written here by the delivery
pipeline (deliver), read and marked by the API (selectors, services), announced to open
streams through Redis (events), and guarded by the subscription and identity checks
(access)."""
