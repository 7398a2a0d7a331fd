// A camera with a detailed moving picture, for browsers whose fake camera
// shows a flat colour (Firefox's): getUserMedia's video becomes a 640x480
// canvas (a scrolling pattern of grey levels, a moving box and a frame
// counter); audio still comes from the browser's own fake microphone.
(() => {
  const mediaDevices = navigator.mediaDevices;
  if (!mediaDevices || window.__pysfuMovingCamera) return;
  window.__pysfuMovingCamera = true;
  const original = mediaDevices.getUserMedia.bind(mediaDevices);

  function movingPicture() {
    const canvas = document.createElement("canvas");
    canvas.width = 640;
    canvas.height = 480;
    const context = canvas.getContext("2d");
    let frame = 0;
    const draw = () => {
      frame += 1;
      const shift = (frame * 4) % 64;
      for (let y = 0; y < 480; y += 32) {
        for (let x = -64; x < 640; x += 32) {
          const level = ((x / 32) * 37 + (y / 32) * 91) % 256;
          context.fillStyle = `rgb(${level}, ${255 - level}, ${(level * 3) % 256})`;
          context.fillRect(x + shift, y, 32, 32);
        }
      }
      context.fillStyle = "white";
      context.fillRect((frame * 6) % 560, 200, 80, 80);
      context.fillStyle = "black";
      context.font = "48px monospace";
      context.fillText(String(frame), 20, 60);
    };
    draw();
    setInterval(draw, 33);
    return canvas.captureStream(30).getVideoTracks()[0];
  }

  mediaDevices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.video) return original(constraints);
    const stream = constraints.audio ? await original({ audio: constraints.audio }) : new MediaStream();
    stream.addTrack(movingPicture());
    return stream;
  };
})();
