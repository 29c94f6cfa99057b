"""Statistics over seeds (:mod:`.stats`) and the study report the ``compare`` command writes (:mod:`.study_report`;
its figures: :mod:`.study_plots`)."""
