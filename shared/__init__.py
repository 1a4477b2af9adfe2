"""Code shared by the API and the workers: settings, the job store, the job types and delivery."""
