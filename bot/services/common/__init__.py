"""What the domains share and no single one of them owns.

Owns: `languages` (the codes a server may set, their names, Chinese script, which engines
serve a language; used by speech, voice, tenancy and the settings), `engines` (`EngineChain`:
engines tried in order, a failing one rested; used by speech and voice), `fs`
(`atomic_write`, `file_stamp`; used by datasets, models and the blob cache), `limits` (fair
per-user allowances that refund failed work), `text` (cutting messages to Discord's size)
and `safejson` (JSON from users, with depth and size limits).
"""
