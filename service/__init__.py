"""newsmt: self-hosted Hebrew/Arabic -> English news translation and summarisation service."""
