"""vap web app: `python app.py [--checkpoint CKPT] [--host 127.0.0.1] [--port 7860]`.

Thin entry point; the UI lives in pipeline/app.py over Predictor and StreamingPredictor.
"""
from pipeline.app import main

if __name__ == "__main__":
    main()
