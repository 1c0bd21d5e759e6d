"""Tenancy: each server (and each user's DMs) is a namespace with its own data and services.

Owns: `namespaces` (the names, their folders, and `Scope`), `tenants` (`Tenants` hands out one
namespace's datasets, models and files, keeping the least recently used few in memory; the
migration of an older install's files) and `language` (`ServerLanguages`: a server's speech
language, `auto`, the last language heard, translation). Offers them to the cogs and wiring.
"""
