"""The audit report's summary is computed from the result's numbers."""

from audit_fixtures import audit_result

from rgaudit.report.audit_report import render_markdown


def _payload(kept: list[int], top_s: float):
    att = {name: {"epsilons": [0.1, 4.0],
                  "min_eps_summary": {"median": m, "q1": m, "q3": m, "n_flipped": 2, "n": 2},
                  "min_eps_actual_summary": {"median": m, "q1": m, "q3": m}}
           for name, m in (("fim-rg-singles", 0.5), ("fgm", 0.7), ("deepfool", 0.4),
                           ("random", float("inf")))}
    return audit_result({
        "model": {"widths": [4, 3, 3, 2]},
        "inputs": {"labels": [0, 1], "pool_accuracy": 1.0, "images": [[3.0, 4.0], [0.0, 1.0]]},
        "diagnosis": {"pairs": [{"pair": "1->2", "n_ops": [3, 3], "fisher_sv": [[top_s, 0.1]],
                                 "n_kept_fisher~1": kept, "regularised": False}]},
        "fim": {"rg-singles": {"top_eig": [1.0], "median_cos_top_vs_direct": 0.97,
                               "n_stiff_median": 1, "seconds": 0.1},
                "direct": {"top_eig": [1.0], "median_cos_top_vs_direct": 1.0,
                           "n_stiff_median": 1, "seconds": 0.1}},
        "attacks": {"l2": att},
        "timings": {"total": 1.0},
    })


def test_summary_reports_absence_of_relevant_directions():
    md = render_markdown(_payload([0], 0.8))
    assert "no relevant direction detected" in md
    assert "largest Fisher-normalised singular value 0.8 " in md
    assert "median |cos| of the top eigenvectors 0.97" in md
    # ordered by applied median, random (never flips at the median) left out
    assert "deepfool 0.4, fim-rg-singles 0.5, fgm 0.7 (median input norm ‖x‖₂ = 5)" in md
    assert "rank 2 of 3 methods" in md


def test_summary_reports_relevant_directions_when_kept():
    md = render_markdown(_payload([2], 0.99))
    assert "2 (pair, input) directions keep their Fisher information" in md
    assert "no relevant direction" not in md


def test_html_report_renders_tables_and_inlines_plots(tmp_path):
    from rgaudit.report.audit_report import render_html

    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    md = render_markdown(_payload([0], 0.8), [png.name])
    page = render_html(md, [png])
    assert page.count("<table>") >= 2
    assert 'src="data:image/png;base64,' in page
    assert 'src="plot.png"' not in page  # nothing points outside the page
