"""Statistics over seeds (:mod:`.stats`) and the study report the ``compare`` command writes (:mod:`.study_report`)."""
