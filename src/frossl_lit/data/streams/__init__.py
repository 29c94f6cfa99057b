"""LitData streams: any DataModule's splits as LitData chunks, written by ``python -m frossl_lit.prepare``
(:mod:`.writer`, imported by that command alone), and the DataModule that trains from them (:mod:`.reader`:
``data.format=litdata data.stream=DIR``, a local folder or an ``s3://`` / ``gs://`` URL that LitData streams and
caches; :mod:`.s3` checks and writes S3). :mod:`.layout` is what both agree on.

Layout of a stream ``DIR``: ``DIR/train`` (and ``DIR/val``, ``DIR/bank`` when the source has them) hold LitData chunks
of items ``{"image", "label", "index"}``, ``DIR/<split>_labels.npy`` each split's labels in order;
``DIR/frossl_meta.json`` the number and names of classes, how images are stored and the source's config. Images are
stored as the source holds them: an in-memory dataset's uint8 arrays (cropped and coloured on the device, as from
memory), an image folder's files byte for byte (decoded crop-aware in the workers, as from the folder:
:mod:`frossl_lit.data.decode`). Nothing is re-encoded.
"""
