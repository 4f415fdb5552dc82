"""Knowledge base: parsing, cleaning, chunking, indexing and retrieval."""
