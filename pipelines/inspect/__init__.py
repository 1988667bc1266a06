"""A dataset's manifest for people: tables (`report`, `tfstream inspect`) and PNG plots
(`plots`, `tfstream inspect --plot`), drawn from the manifest alone."""
