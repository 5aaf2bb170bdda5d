"""The numeric exercises of notebooks 01-04: minise measures what each solution derives; an answer
is taken only in the form asked for (no broadcasting, no strings); a wrong number gets a hint."""
import pytest

from minise import exercises
from minise.exercises import answers
from minise.exercises.answers import NOT_ANSWERED, QUESTIONS
from minise.exercises.grading import CORRECT, WRONG
from minise.exercises.lesson_solutions import SOLUTIONS

SE20_WIDTHS = (16, 32, 64)
RESNET50 = answers.RESNET50_STAGES
DERIVED = {     # each exercise's answer as its worked solution derives it
    "1.1": (8 * 64, 16 * 16),
    "1.2": 49 / (7 * 7),
    "1.3": 1 / (32 * 32),
    "1.5": 0.0,
    "2.1": 0.5 * (1 - 0.5),
    "2.2": 2 * 64 * 64 // 16 + 64 // 16 + 64,
    "2.3": 2 * sum(blocks * C * C for C, blocks in RESNET50) // 16,
    "2.4": (0.0, 0.0),
    "3.1": 0.25,
    "3.2": 1 / 4 ** 0.5,
    "3.3": 1.0,
    "3.4": 0.0,
    "4.1": sum(3 * (2 * C * (C // 16) + C) for C in SE20_WIDTHS),
    "4.2": 16 * 4 + 4 * 16 + 16,
    "4.3": (2 * 64 * (64 // 16), 64 * 8 * 8),
    "4.4": 0.5 ** 9,
    "4.5": 9 * 16 + 9 * 32,
}


@pytest.mark.parametrize("question", list(DERIVED))
def test_the_derived_answer_is_what_minise_measures(question):
    feedback = exercises.check_answer(question, DERIVED[question])
    assert feedback.status == CORRECT, feedback


def test_every_question_has_a_derivation_and_a_worked_solution():
    assert set(QUESTIONS) == set(DERIVED)
    assert set(QUESTIONS) <= set(SOLUTIONS)


@pytest.mark.parametrize("question, answer, fragment", [
    ("2.2", 576, "count with one bias"),
    ("2.3", 2530048, "FC weights only"),
    ("4.2", 48, "without the floor"),
    ("1.2", 49, "mean over all the pixels"),
    ("2.1", 0.5, "not the slope"),
])
def test_a_typical_wrong_number_is_explained(question, answer, fragment):
    feedback = exercises.check_answer(question, answer)
    assert feedback.status == WRONG and feedback.kinds == ["typical"]
    assert fragment in str(feedback) and f"show_solution('{question}')" in str(feedback)


def test_another_wrong_number_points_to_the_lesson():
    feedback = exercises.check_answer("2.2", 581)
    assert feedback.kinds == ["value"] and "notebook 02" in str(feedback)


@pytest.mark.parametrize("answer, fragment", [
    (0, "got int 0"),                               # a scalar is not broadcast to a pair
    ("512, 256", "got str"),
    ((512, 256, 1), "tuple of length 3"),
    ((512, "256"), "got str '256'"),
    ((True, 256), "got bool"),
])
def test_an_answer_in_the_wrong_form_is_refused_as_such(answer, fragment):
    feedback = exercises.check_answer("1.1", answer)
    assert feedback.status == WRONG and feedback.kinds == ["form"]
    assert "pair (numbers in z, inputs per entry)" in str(feedback) and fragment in str(feedback)


def test_a_number_question_refuses_a_pair_and_a_string():
    assert exercises.check_answer("2.2", (580, 0)).kinds == ["form"]
    assert exercises.check_answer("2.2", "580").kinds == ["form"]


def test_no_answer_yet_and_an_unknown_question():
    assert exercises.check_answer("4.4", None).status == NOT_ANSWERED
    with pytest.raises(ValueError, match="9.9"):
        exercises.check_answer("9.9", 1)


def test_a_measurement_passed_in_is_used():
    assert exercises.check_answer("3.2", 0.5, measured=0.52).passed
    assert not exercises.check_answer("3.2", 0.5, measured=0.9).passed


def test_show_solution_prints_a_lessons_worked_answer(capsys):
    exercises.show_solution("2.2")
    assert "580" in capsys.readouterr().out


def test_a_hint_for_a_lessons_exercise_points_to_the_lesson_and_the_worked_answer():
    text = exercises.hint("2.2")
    assert "Counting parameters" in text and "show_solution('2.2')" in text
