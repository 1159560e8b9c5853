"""The daily "Failed Transactions" report, sent by reconcile itself and watched by it.

`model` holds what a built report is (shared by every part); `build` reads the store into a
`Report`; `chart` draws its picture; `send` delivers it through the alert outbox and records
each send.
"""
