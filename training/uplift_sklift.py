"""Cross-check `nudge-train uplift` on Hillstrom with scikit-uplift (not run by CI).

  nudge-train uplift --spec training/specs/hillstrom.toml --data ../shared/data/hillstrom.csv \
      --outcome visit --predictions preds.csv
  python uplift_sklift.py ../shared/data/hillstrom.csv preds.csv visit
"""
import sys
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklift.metrics import qini_auc_score, uplift_auc_score
from sklift.models import TwoModels

data, preds, outcome = sys.argv[1], sys.argv[2], sys.argv[3]
df = pd.read_csv(data)
p = pd.read_csv(preds)
assert len(df) == len(p)
arms = ["No E-Mail", "Mens E-Mail", "Womens E-Mail"]
pcols = [c for c in p.columns if c.startswith("p_")]
X = pd.DataFrame({
    "recency": df.recency, "history": np.log1p(df.history.clip(lower=0)),
    "mens": df.mens, "womens": df.womens, "newbie": df.newbie,
})
X = pd.concat([X, pd.get_dummies(df.zip_code, prefix="zip").astype(float),
               pd.get_dummies(df.channel, prefix="ch").astype(float)], axis=1)
held = p.held_out.values == 1
y = df[outcome].values
scale = ["recency", "history"]
sc = StandardScaler().fit(X.loc[~held, scale])
X[scale] = sc.transform(X[scale])
for a in (1, 2):
    rows = p.arm.isin([0, a]).values
    t = (p.arm.values == a).astype(int)
    te = rows & held
    rust_score = (p[pcols[a]] - p[pcols[0]]).values
    q_rust = qini_auc_score(y[te], rust_score[te], t[te])
    u_rust = uplift_auc_score(y[te], rust_score[te], t[te])
    tr = rows & ~held
    tm = TwoModels(estimator_trmnt=LogisticRegression(C=1.0, max_iter=5000),
                   estimator_ctrl=LogisticRegression(C=1.0, max_iter=5000), method="vanilla")
    tm.fit(X[tr], y[tr], t[tr])
    s = tm.predict(X[te])
    print(f"{outcome} {arms[a]:<14} sklift metric on nudge-train predictions: qini {q_rust:.4f} uplift_auc {u_rust:.4f};"
          f"  sklift TwoModels(LogisticRegression C=1) same split: qini {qini_auc_score(y[te], s, t[te]):.4f}"
          f" uplift_auc {uplift_auc_score(y[te], s, t[te]):.4f}; mean predicted uplift {np.mean(s):.4f}")
