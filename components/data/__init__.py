"""What components hand each other: the on-disk formats, the custom artifact types, and the
token ids read back as arrays."""
