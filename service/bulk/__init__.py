"""Bulk runs over files and folders: discovery, atomic outputs, results.jsonl, the HTML report and run statistics."""
