"""What every public study's adapter does alike, on its example layout: subject ids it does not
have are refused, and a truncated raw file is an error naming it when the recording is read.
(Each study's own formats are tested in ``test_<study>.py``.)"""

from __future__ import annotations

import pytest
from fixtures import LAYOUT_STUDIES, PAPER_LAYOUT_STUDIES, copy_layout, truncate

from braindecode_speech.cli import example_layout as example_layout_command
from braindecode_speech.data.studies import get
from braindecode_speech.data.study import StudyError

#: per study: a subject id it does not have, a raw file (relative path), the index of its
#: recording, and what the error says about it once truncated
CASES = {
    "gwilliams2022": ("99", "sub-01/ses-0/meg/sub-01_ses-0_task-1_meg.con", 1,
                      "sub-01_ses-0_task-1_meg.con: damaged FIF file"),
    "schoffelen2019": ("A2999", "sub-A2003/meg/sub-A2003_task-auditory_meg.ds/"
                       "sub-A2003_task-auditory_meg.meg4", 1,
                       "sub-A2003_task-auditory_meg.ds: damaged FIF file"),
    "broderick2019": ("7", "Natural Speech/EEG/Subject1/Subject1_Run1.mat", 0,
                      "Subject1_Run1.mat: cannot read MATLAB file"),
    "brennan2019": ("S99", "S01.mat", 0, "S01.mat: cannot read MATLAB file"),
}


def test_every_study_has_a_case_and_a_command_line_choice():
    assert set(CASES) == set(PAPER_LAYOUT_STUDIES)
    assert set(example_layout_command.STUDIES) == set(LAYOUT_STUDIES)


def test_unknown_subject_id(example_layout):
    study, root = example_layout
    unknown = CASES[study][0]
    with pytest.raises(StudyError, match=rf"unknown subject ids \['{unknown}'\]"):
        get(study, root, subjects=[unknown]).recordings()


def test_truncated_raw_file_is_an_error_naming_it(example_layout, tmp_path):
    study, root = example_layout
    _, relative, index, message = CASES[study]
    copy = copy_layout(root, tmp_path / study)
    recording = get(study, copy).recordings()[index]
    assert recording.path == copy / relative.removesuffix(
        "/sub-A2003_task-auditory_meg.meg4")  # a CTF recording is its .ds folder
    truncate(copy / relative)
    with pytest.raises(StudyError, match=message):
        recording.raw()
