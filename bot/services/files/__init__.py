"""Files: what users may fetch or archive under DATA_DIR, and DATA_DIR as a cache of the blobs.

Owns: `paths` (the path rules, checked as text: `path_parts`, PATH_REFUSED), `service`
(`FileService`: resolve, read for upload, archive, suggest) and `blobcache` (`BlobCache`: a
namespace's folder kept a cache of the database's blobs). Offers them to tenancy, which builds
one of each per namespace; nothing here imports back up into the services that use them.
"""
