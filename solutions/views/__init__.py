"""The Solutions section's pages: ``authoring`` (solutions, their
components, Build and publish, versions, package files)."""
