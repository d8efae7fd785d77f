"""Handle and TimerHandle behaviours that mutation testing found unpinned (python -m tests.mutation):
how a callback is named in repr() (the loop's error reports and debug warnings show it)."""

from __future__ import annotations

import functools

from reactor import Handle


def f(*args):
    pass


class Callable:
    """A callable object: no __qualname__ of its own."""

    def __call__(self, *args):
        pass

    def __repr__(self):
        return "<a Callable>"


def test_a_new_handle_is_not_cancelled(reactor):
    assert reactor.call_soon(f).cancelled() is False
    assert reactor.call_later(1, f).cancelled() is False


def test_repr_names_the_call_as_written(reactor):
    assert repr(reactor.call_soon(f, 1, "x")) == "<Handle f(1, 'x')>"
    assert repr(reactor.call_soon(functools.partial(f, 1), 2)) == "<Handle f(1, 2)>"  # a partial's args first
    assert repr(reactor.call_soon(Callable(), 3)) == "<Handle <a Callable>(3)>"
    timer = reactor.call_at(5.0, f)
    assert repr(timer) == "<TimerHandle when=5.000000 f()>"


def test_a_cancelled_handle_keeps_a_short_name(reactor):
    handles = [reactor.call_soon(f, 1), reactor.call_soon(functools.partial(f, 1)),
               reactor.call_soon(Callable()), reactor.call_at(7.0, f)]
    for handle in handles:
        handle.cancel()
    assert [repr(h) for h in handles[:3]] == ["<Handle cancelled f(...)>", "<Handle cancelled f(...)>",
                                              "<Handle cancelled Callable(...)>"]
    assert repr(handles[3]) == "<TimerHandle cancelled when=7.000000 f(...)>"
    assert all(h.cancelled() for h in handles)
    assert isinstance(handles[0], Handle)


def test_a_builtin_method_is_named_after_the_class_that_defines_it(reactor):
    # A builtin method names its instance's class (so does every method of a
    # compiled class, in the mypyc build): the report names the defining one,
    # as it would for a Python method.
    class Inbox(list):
        pass

    assert repr(reactor.call_soon(Inbox().append, 1)) == "<Handle list.append(1)>"
    assert repr(reactor.call_soon(len, "ab")) == "<Handle len('ab')>"  # a builtin function: its own name


def test_a_python_method_keeps_the_name_of_its_code(reactor):
    # Only builtin methods are looked up: a Python function is named where it
    # was written, even when another class borrows it.
    class Worker:
        def run(self):
            pass

    class Borrower:
        run = Worker.run

    assert repr(reactor.call_soon(Borrower().run)) == (
        "<Handle test_a_python_method_keeps_the_name_of_its_code.<locals>.Worker.run()>")
